#!/usr/bin/env python3
"""Writes a rules file with 100 rules and 500 patterns (bench/rules-100.yaml is its output):
80 literal-pattern rules of 5 literals, 5 regex-pattern rules of 20 regexes, 10 metric rules,
5 time-window rules. Deterministic."""
import random

rng = random.Random(42)
WORDS = ("ignore disregard forget override bypass reveal print dump exfiltrate leak system "
         "developer admin root secret password token key credential instructions prompt policy "
         "guardrail filter jailbreak persona roleplay pretend simulate unrestricted mode").split()
out = ["anomaly_detection:", "  time_zone: UTC", "  rules:"]
n = 0
for r in range(80):
    lits = sorted({" ".join(rng.sample(WORDS, 3)) for _ in range(5)})
    while len(lits) < 5:
        lits.append(" ".join(rng.sample(WORDS, 4)))
    out += [f"    - name: pattern_rule_{r:02d}", "      condition:",
            "        match_patterns: [" + ", ".join(f'"{l}"' for l in lits) + "]",
            f"      action: {'block_and_alert' if r % 4 == 0 else 'alert'}"]
    n += len(lits)
for r in range(5):
    rx = [f"{rng.choice(WORDS)}\\\\s+(?:all|any|the)\\\\s+{rng.choice(WORDS)}{i}" for i in range(20)]
    out += [f"    - name: regex_rule_{r}", "      condition:",
            "        match_regex: [" + ", ".join(f'"{x}"' for x in rx) + "]",
            "      action: alert"]
    n += len(rx)
metrics = ["tool_calls_per_minute", "llm_requests_per_minute", "tokens_per_minute",
           "errors_per_minute", "denied_calls_per_minute", "result_rows_per_session"]
for r in range(10):
    out += [f"    - name: metric_rule_{r}", "      condition:",
            f"        metric: {metrics[r % len(metrics)]}", "        baseline_window: 7d",
            f"        threshold_multiplier: {5 + r}",
            f"      action: {'alert_and_throttle' if r % 3 == 0 else 'alert'}"]
for r in range(5):
    out += [f"    - name: window_rule_{r}", "      condition:",
            f"        tool: tool_{r}", '        time_window: "00:00-06:00 weekdays, all weekends"',
            "        min_count: 3", "      action: alert"]
assert n == 500, n
print("\n".join(out))
