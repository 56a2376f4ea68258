import sys, statistics as st, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    p = line.split()
    if not p or p[0] != "RESULT": continue
    v, k, b, m = p[1], int(p[2]), int(p[3]), p[4]
    u, s, thr, wall, drops = map(float, p[5:10])
    d[(v, k, b, m)].append((u, s, thr, wall, drops))
print(f"{'variant':16} {'K':>5} {'batch':>5} {'mode':12} {'cpu/pkt med':>11} {'(min-max)':>13} {'user':>6} {'sys':>6} {'wall med':>8} drops")
for key, rs in d.items():
    v, k, b, m = key
    thr = [r[2] for r in rs]; med = st.median(thr)
    uf = sum(r[0] for r in rs) / max(1e-9, sum(r[0] + r[1] for r in rs))
    print(f"{v:16} {k:5} {b:5} {m:12} {med:11.2f} {min(thr):6.2f}-{max(thr):<6.2f} {med*uf:6.2f} {med*(1-uf):6.2f} {st.median(r[3] for r in rs):8.2f} {int(sum(r[4] for r in rs))}")
