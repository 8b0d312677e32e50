"""The report of scripts/bench: Markdown tables, notes, goals and the chart.

Every figure and every verdict here is computed from the run's results,
a list of (system, workload, unit, [values]) tuples.
"""

import os
import statistics
import subprocess
import time

# The S3-backed peers cardfs-s3 must beat (issue 16), and the local one
# cardfs-local must beat.
S3_PEERS = ["juicefs", "rclone175", "rclone-crypt", "s3fs"]
LOCAL_PEERS = ["gocryptfs"]

NOTES = {
    "plain": "the local filesystem under /var/tmp, no FUSE, no encryption: the ceiling.",
    "gocryptfs": "encrypted overlay on a local directory (file names and contents encrypted; "
                 "the tree's shape and file sizes show).",
    "cryfs": "encrypted block store on a local directory (names, sizes and tree hidden).",
    "juicefs": "JuiceFS {juicefs}, metadata in a local SQLite file, data on the same S3 server, "
               "encrypted with `--encrypt-rsa-key`. Its encryption covers data objects only: names, sizes "
               "and the tree are plaintext in its metadata database, which it trusts (a changed database "
               "is not detected). \"Until in store\" is when its data objects are in the bucket.",
    "rclone175": "rclone {rclone175} crypt over the S3 server, `--vfs-cache-mode full`, "
                 "`--vfs-write-back {write_back}`: a closed file is uploaded {write_back} later, so "
                 "\"into mount\" measures its local cache and \"until in store\" includes that delay. "
                 "Crypt hides names and contents; sizes and the tree's shape show.",
    "rclone-crypt": "Debian's rclone {rclone} crypt over the S3 server, `--vfs-cache-mode writes`, "
                    "`--vfs-write-back {write_back}`.",
    "s3fs": "s3fs over the S3 server, not encrypted: the S3 baseline.",
    "cardfs-s3": "cardfs over the S3 server (contents, names, sizes and tree encrypted and authenticated).",
    "cardfs-local": "cardfs over a local-directory store.",
    "s3-server(boto3)": "the S3 server's own single-stream PUT and GET of the big file (boto3).",
}


def higher_is_better(unit):
    return unit != "s"


def first_line(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError:
        return "not installed"
    text = (r.stdout or r.stderr).strip()
    return text.splitlines()[0] if text else "?"


def versions(venv_bin):
    out = {"rclone": first_line(["rclone", "version"]), "s3fs": first_line(["s3fs", "--version"]),
           "gocryptfs": first_line(["gocryptfs", "-version"]), "cryfs": first_line(["cryfs", "--version"])}
    if venv_bin:
        out["juicefs"] = first_line([os.path.join(venv_bin, "juicefs"), "version"])
        out["rclone175"] = first_line([os.path.join(venv_bin, "rclone"), "version"])
    return out


def machine_description(s3, vers):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return "\n".join([
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {os.cpu_count()} cores ({cpu}), kernel {os.uname().release}",
        f"- S3 server: {s3.version[0] if s3 else 'not used'} on 127.0.0.1 (shares the cores)",
        "- Peers: " + "; ".join(vers.values()),
    ])


def system_notes(systems, vers, write_back):
    def short(v):  # "rclone v1.75.2" -> "v1.75.2"; "juicefs version 1.4.2+..." -> "1.4.2+..."
        return v.split()[-1] if v else "?"
    fill = {"juicefs": short(vers.get("juicefs")), "rclone175": short(vers.get("rclone175")),
            "rclone": short(vers.get("rclone")), "write_back": write_back}
    out = ["## The systems", ""]
    out += [f"- **{s}**: {NOTES[s].format(**fill)}" for s in systems if s in NOTES]
    return out


def goals(results, main, peers, target_of):
    """Rows of (workload, unit, main's median, best peer, its median, ratio,
    target, verdict): main's speed over the best of `peers` on each workload
    (>1 means main is faster)."""
    med = {(s, wl): statistics.median(v) for s, wl, _, v in results if v}
    rows = []
    for wl, unit in workloads_of(results):
        target = target_of(wl)
        mine = med.get((main, wl))
        theirs = [(p, med[(p, wl)]) for p in peers if (p, wl) in med and med[(p, wl)] > 0]
        if not theirs:
            continue
        better = max if higher_is_better(unit) else min
        best, value = better(theirs, key=lambda pv: pv[1])
        if not mine:
            rows.append((wl, unit, None, best, value, None, target, "missed (no figure for " + main + ")"))
            continue
        ratio = mine / value if higher_is_better(unit) else value / mine
        rows.append((wl, unit, mine, best, value, ratio, target, "met" if ratio >= target else "missed"))
    return rows


def s3_target(wl):
    """Issue 16: at least 2x the best S3 peer until data is in the store
    (big file and small files), at least 1x everywhere else."""
    return 2.0 if wl.endswith("until in store") else 1.0


def goals_section(results, systems):
    out = []
    plans = [("cardfs-s3", [p for p in S3_PEERS if p in systems], s3_target),
             ("cardfs-local", [p for p in LOCAL_PEERS if p in systems], lambda wl: 1.0)]
    for main, peers, target_of in plans:
        if main not in systems or not peers:
            continue
        rows = goals(results, main, peers, target_of)
        if not rows:
            continue
        met = sum(1 for r in rows if r[7] == "met")
        against = peers[0] if len(peers) == 1 else f"the best of {', '.join(peers)}"
        out += ["", f"### {main} against {against}: {met} of {len(rows)} met", "",
                f"| workload | unit | {main} | best peer | peer's figure | ratio | goal | verdict |",
                "|---|---|---|---|---|---|---|---|"]
        for wl, unit, mine, best, value, ratio, target, verdict in rows:
            mine_s = "n/a" if mine is None else f"{mine:.2f}"
            ratio_s = "n/a" if ratio is None else f"{ratio:.2f}x"
            out.append(f"| {wl} | {unit} | {mine_s} | {best} | {value:.2f} | {ratio_s} | >= {target:.1f}x | {verdict} |")
    if out:
        failed = sorted({s for s, wl, _, _ in results if wl == "error" and s in S3_PEERS + LOCAL_PEERS})
        head = ["", "## Goals (issue 16), computed from this run", "",
                "Ratio = speed of cardfs over the best peer on that row (>1 means cardfs is faster)."]
        if failed:
            head.append(f"Peers that failed in this run are missing from the comparison: {', '.join(failed)}.")
        out = head + out
    return out


def workloads_of(results):
    out = []
    for _, wl, unit, _ in results:
        if wl != "error" and (wl, unit) not in out:
            out.append((wl, unit))
    return out


def markdown_table(results, args, s3, vers, write_back):
    systems = []
    for s, _, _, _ in results:
        if s not in systems:
            systems.append(s)
    workloads = workloads_of(results)
    med = {(s, wl): statistics.median(v) for s, wl, _, v in results if v}
    rng = {(s, wl): (min(v), max(v)) for s, wl, _, v in results if v}
    out = ["# Benchmarks: cardfs and its peers, one run\n",
           "Produced by `scripts/bench` " +
           f"(`--runs {args.runs} --size-mib {args.size_mib} --files {args.files} --stats {args.stats}`). "
           "Each cell is the median of the runs followed by [min-max].\n",
           machine_description(s3, vers), ""]
    out += system_notes(systems, vers, write_back)
    out += ["", "## Figures", "",
            "| workload | unit | " + " | ".join(systems) + " |",
            "|---|---|" + "---|" * len(systems)]
    for wl, unit in workloads:
        cells = []
        for s in systems:
            if (s, wl) in med:
                lo, hi = rng[(s, wl)]
                cells.append(f"{med[(s, wl)]:.2f} [{lo:.2f}-{hi:.2f}]")
            else:
                cells.append("n/a")
        out.append(f"| {wl} | {unit} | " + " | ".join(cells) + " |")
    out += goals_section(results, systems)
    errors = [(s, msg) for s, wl, msg, _ in results if wl == "error"]
    for main in ("cardfs-s3", "cardfs-local"):
        if main not in systems or main in dict(errors) or len(systems) < 2:
            continue
        out += ["", f"## Speed of {main} relative to each peer (>1 means {main} is faster)", "",
                "| workload | " + " | ".join(s for s in systems if s != main) + " |",
                "|---|" + "---|" * (len(systems) - 1)]
        for wl, unit in workloads:
            cells = []
            for s in systems:
                if s == main:
                    continue
                a, b = med.get((main, wl)), med.get((s, wl))
                if a is None or b is None or a == 0 or b == 0:
                    cells.append("n/a")
                else:
                    cells.append(f"{(a / b) if higher_is_better(unit) else (b / a):.2f}")
            out.append(f"| {wl} | " + " | ".join(cells) + " |")
    if errors:
        out += ["", "## Systems that failed in this run", ""]
        out += [f"- {s}: {' '.join(msg.split())[:300]}" for s, msg in errors]
    out += ["", "![bar chart per workload](bench.png)", ""]
    return "\n".join(out)


def chart(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    data = {}
    for s, wl, unit, vals in results:
        if vals:
            data.setdefault((wl, unit), []).append((s, statistics.median(vals)))
    n = len(data)
    if n == 0:
        return
    cols = 3
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows), squeeze=False)
    for ax, ((wl, unit), items) in zip(axes.flat, data.items()):
        names = [s for s, _ in items]
        vals = [v for _, v in items]
        colors = ["tab:red" if s.startswith("cardfs") else "tab:gray" for s in names]
        ax.barh(names, vals, color=colors)
        better = "higher is better" if higher_is_better(unit) else "lower is better"
        ax.set_title(f"{wl}\n({unit}, {better})", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.invert_yaxis()
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
