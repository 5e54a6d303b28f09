# A small character-level GPT on the pinned Shakespeare corpus (data/shakespeare_char),
# sized for a laptop CPU: 0.80M parameters, about a minute on 2 cores.
#   python train.py config/train_shakespeare_char.py
#   python sample.py --out_dir=out-shakespeare-char

out_dir = 'out-shakespeare-char'
eval_interval = 500  # the train/val estimate is cheap at this size; the last one covers the whole val split
eval_iters = 20
log_interval = 100  # the progress report already comes every 1% (20 iterations)
always_save_checkpoint = False  # only when val loss improves: overfitting is possible on this small corpus

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 12
block_size = 64  # context of up to 64 previous characters

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0

learning_rate = 1e-3  # small networks can take a larger learning rate
max_iters = 2000
lr_decay_iters = 2000  # usually equal to max_iters
min_lr = 1e-4  # learning_rate / 10
beta2 = 0.99  # a little larger than GPT-2's 0.95: few tokens per iteration
warmup_iters = 100

device = 'auto'
compile = False  # compiling takes longer than it saves at this size on a CPU
