# The larger character-level GPT on the pinned Shakespeare corpus (data/shakespeare_char):
# nanoGPT's "baby GPT" (6 layers, 6 heads, 384 wide, context 256; 10.65M parameters),
# sized for a GPU: a few minutes on one.
#   python train.py config/train_shakespeare.py --max_iters=3000
#   python sample.py --out_dir=out-shakespeare

out_dir = 'out-shakespeare'
eval_interval = 250
eval_iters = 200
log_interval = 10
always_save_checkpoint = False  # only when val loss improves: this model can overfit the small corpus

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256  # context of up to 256 previous characters

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 1e-3  # with baby networks we can afford a higher learning rate
max_iters = 5000
lr_decay_iters = 5000  # usually equal to max_iters
min_lr = 1e-4  # learning_rate / 10
beta2 = 0.99  # a little larger than GPT-2's 0.95: few tokens per iteration
warmup_iters = 100
