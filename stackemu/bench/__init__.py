"""`stackemu bench`: the emulated stack's speed against this machine's kernel, measured
in the same run (issue 9). runner: the scenarios, their interleaving and the table;
emulated and kernel: each side's scenarios; stats: median, spread, percentiles, ratios."""
