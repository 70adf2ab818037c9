"""`seqnet bench`: the network benchmark.

It starts a fresh local network of real `seqnet node run` processes, measures
this machine's signature-recovery limit, drives pre-signed load at a fixed rate
or searches for the highest rate the network sustains, runs the same load
against one validator alone (the single-sequencer baseline), and reports
committed tx/s, submit-to-commit latency, blocks/s, view changes and CPU.

    limits.py        every bound and default, with its reason
    histogram.py     log-linear latency histogram (<= 1% relative error)
    sustain.py       the sustained-rate decision and the rate search (pure)
    verify_limit.py  signature recoveries per second on every core
    traffic.py       accounts, the mixes, pre-signing, the step plan
    cpu.py           CPU seconds of a process tree from /proc
    drive.py         one load step against running nodes (trio)
    wan.py           network namespaces, bridges and netem for --wan-delay-ms
    cluster.py       starting and always stopping a benchmark network
    run.py           the whole benchmark: networks, steps, baseline, report
    report.py        the machine, the git commit, the JSON and text reports
"""
