# Reference measurement, not part of nad: one WRN-16-1 training step (batch 128, channels-last,
# SGD) in Debian's PyTorch 1.13 on this machine, fp32 and bf16 autocast, with the operator
# profile, to compare with nad_bench's train-epoch. Run: /usr/bin/python3 bench/pytorch_train_step.py
import torch, torch.nn as nn, torch.nn.functional as F, time
class Block(nn.Module):
    def __init__(s, i, o, stride):
        super().__init__()
        s.bn1=nn.BatchNorm2d(i); s.conv1=nn.Conv2d(i,o,3,stride,1,bias=False)
        s.bn2=nn.BatchNorm2d(o); s.conv2=nn.Conv2d(o,o,3,1,1,bias=False)
        s.eq = i==o
        s.sc = None if s.eq else nn.Conv2d(i,o,1,stride,0,bias=False)
    def forward(s,x):
        o = F.relu(s.bn1(x))
        y = s.conv1(o if not s.eq else o)
        y = s.conv2(F.relu(s.bn2(y)))
        return y + (x if s.eq else s.sc(o))
class WRN(nn.Module):
    def __init__(s):
        super().__init__()
        s.conv1=nn.Conv2d(3,16,3,1,1,bias=False)
        s.b=nn.Sequential(Block(16,16,1),Block(16,16,1),Block(16,32,2),Block(32,32,1),Block(32,64,2),Block(64,64,1))
        s.bn=nn.BatchNorm2d(64); s.fc=nn.Linear(64,10)
    def forward(s,x):
        x=F.relu(s.bn(s.b(s.conv1(x))))
        return s.fc(F.adaptive_avg_pool2d(x,1).flatten(1))
def main():
    torch.set_num_threads(2)
    m=WRN().to(memory_format=torch.channels_last)
    opt=torch.optim.SGD(m.parameters(),lr=0.05,momentum=0.9,nesterov=True,weight_decay=5e-4)
    x=torch.rand(128,3,32,32).contiguous(memory_format=torch.channels_last); y=torch.randint(0,10,(128,))
    def step():
        opt.zero_grad(); l=F.cross_entropy(m(x),y); l.backward(); opt.step()
    def step16():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            l=F.cross_entropy(m(x).float(),y)
        l.backward(); opt.step()
    def measure(label, run, rows):
        for _ in range(5): run()
        t=time.time()
        for _ in range(20): run()
        print(label, "step ms", (time.time()-t)/20*1000, "-> img/s", 128*20/(time.time()-t))
        with torch.autograd.profiler.profile() as p:
            for _ in range(10): run()
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    measure("fp32", step, 22)
    measure("bf16", step16, 8)

if __name__ == "__main__":
    main()
