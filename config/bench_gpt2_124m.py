# Throughput and MFU of GPT-2 small's shape (12 layers, 12 heads, 768 wide, context 1024;
# 85M non-embedding parameters with this 76-character vocabulary) on the pinned Shakespeare
# corpus. For a GPU; the progress reports carry tokens/s and MFU.
#   python train.py config/bench_gpt2_124m.py
#   torchrun --standalone --nproc_per_node=8 train.py config/bench_gpt2_124m.py --gradient_accumulation_steps=8

out_dir = 'out-bench-gpt2-124m'
eval_interval = 1000000  # no evaluation but the one at the end: the run measures training speed
eval_iters = 20
log_interval = 10
always_save_checkpoint = False
report_interval = 5.0  # 20 reports over the run

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 12
block_size = 1024

n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
bias = False

learning_rate = 6e-4
max_iters = 300
lr_decay_iters = 300
min_lr = 6e-5
warmup_iters = 30
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0

dtype = 'auto'  # bf16 where supported, else fp16 with loss scaling
compile = None  # auto: on for CUDA
