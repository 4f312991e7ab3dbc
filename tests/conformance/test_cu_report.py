#!/usr/bin/env python3
"""Reads iscsi-test-cu output and judges it against the conformance rules (docs/conformance.md).

    test_cu_report.py expand ALL PATTERN...
    test_cu_report.py plan ALL DOC OUTDIR LABEL [-]PATTERN...
    test_cu_report.py report --allowed DOC [--enforce TARGET] [--markdown FILE]
                      --target NAME --config LABEL=LIST:OUT[,OUT...] [--config ...]
                      [--target NAME --config ...]

`expand` prints the tests of ALL (the output of `iscsi-test-cu -l`) that the iscsi-test-cu test
patterns (FAMILY[.SUITE[.TEST]], shell wildcards, as -t takes them) select, one per line.

`plan` writes OUTDIR/LABEL.txt, the tests the patterns select (a leading "-" removes what a
pattern selects) minus the ones DOC lists as not applicable to configuration LABEL, and
OUTDIR/LABEL.patterns, the same set as iscsi-test-cu -t patterns (whole suites where possible).

`report`: each --config names one configuration of a target (a LUN), the file LIST with the full
names of the tests asked for in it (FAMILY.SUITE.TEST, one per line), and the output files of the
iscsi-test-cu runs against it (run with -V, so that every [SKIPPED] line shows).

Per test and configuration the outcome is one of: pass, skip (the test printed a [SKIPPED] line,
whatever CUnit's verdict), fail (CUnit's FAILED), missing (no verdict: the suite did not
initialize or the tool died). A test that skipped in every configuration of a target is a skip
of that target.

For the target named by --enforce these rules hold, or the exit status is 1:
  - no test fails or is missing in any configuration;
  - every skip of the target is listed in DOC between the allowed-skips markers, and every
    listed test is a removable-media or multipath test (the only kinds that may skip);
  - the number of tests that ran (passed somewhere) is at least the number asked for minus the
    number listed.
The other targets are printed for comparison only. --markdown writes the summary tables as
markdown (for docs/conformance.md).
"""

import argparse
import fnmatch
import os
import re
import sys
from collections import OrderedDict

# Suites whose tests need removable media or a second path; only these may be listed as skips.
SKIPPABLE = re.compile(
    r"^SCSI\.(PreventAllow\.\w+|NoMedia\.NoMediaSBC|StartStopUnit\.(Simple|PwrCnd|NoLoej)"
    r"|MultipathIO\.\w+)$")

TEST_LINE = re.compile(r"^  Test: (\S+) \.\.\.(.*)$")
SUITE_LINE = re.compile(r"^Suite: (\S+)")
VERDICT = re.compile(r"^(passed|FAILED)\b")
ASSERT_LINE = re.compile(r"^    \d+\. (\S+:\d+)\s+- (.*)$")
SUMMARY_TESTS = re.compile(r"^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)")


class Result:
    """One test in one configuration."""

    def __init__(self):
        self.verdict = None  # "passed" or "FAILED"
        self.skips = []  # the [SKIPPED] messages
        self.failed_logs = []  # libiscsi's [FAILED] log lines
        self.asserts = []  # CUnit's failed assertions

    def outcome(self):
        if self.verdict is None:
            return "missing"
        if self.verdict == "FAILED":
            return "fail"
        return "skip" if self.skips else "pass"


def parse_output(path, suite_family, results):
    """Adds the tests found in one iscsi-test-cu output file to `results` (name -> Result)."""
    suite = None
    current = None
    in_asserts = False
    summary = None
    with open(path, errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            m = SUITE_LINE.match(line)
            if m:
                suite = m.group(1)
                current = None
                in_asserts = False
                continue
            m = TEST_LINE.match(line)
            if m and suite is not None:
                family = suite_family.get(suite, "?")
                name = f"{family}.{suite}.{m.group(1)}"
                current = results.setdefault(name, Result())
                # A test run twice (not done here) keeps the last run.
                current.verdict = None
                current.skips, current.failed_logs, current.asserts = [], [], []
                in_asserts = False
                rest = m.group(2)
            else:
                rest = line
            m = SUMMARY_TESTS.match(line)
            if m:
                summary = tuple(int(x) for x in m.groups())
                current = None
                continue
            if current is None:
                continue
            if in_asserts:
                a = ASSERT_LINE.match(line)
                if a:
                    current.asserts.append(f"{a.group(1)} {a.group(2)}")
                    continue
                in_asserts = False
            v = VERDICT.match(rest)
            if v and current.verdict is None:
                current.verdict = v.group(1)
                in_asserts = current.verdict == "FAILED"
                rest = rest[len(v.group(1)):]
            if "[SKIPPED]" in rest:
                current.skips.append(rest.split("[SKIPPED]", 1)[1].strip())
            if "[FAILED]" in rest:
                current.failed_logs.append(rest.split("[FAILED]", 1)[1].strip())
    return summary


def load_allowed(doc):
    """The tests listed between the allowed-skips markers of DOC: name -> reason."""
    allowed = OrderedDict()
    inside = False
    with open(doc) as f:
        for line in f:
            if "<!-- allowed-skips:begin -->" in line:
                inside = True
            elif "<!-- allowed-skips:end -->" in line:
                inside = False
            elif inside and line.startswith("|"):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                name = cells[0].strip("`")
                if re.match(r"^(SCSI|iSCSI)\.\w[\w-]*\.\w[\w-]*$", name):
                    allowed[name] = cells[1] if len(cells) > 1 else ""
    return allowed


class Target:
    def __init__(self, name):
        self.name = name
        self.tests = OrderedDict()  # label -> [test names asked for]
        self.results = OrderedDict()  # label -> {test: Result}
        self.skip_lines = {}  # label -> number of [SKIPPED] lines
        self.summaries = {}  # label -> [CUnit "tests" summary tuples]

    def all_tests(self):
        seen = OrderedDict()
        for names in self.tests.values():
            for n in names:
                seen[n] = True
        return list(seen)


def config_counts(tests, results):
    counts = {"pass": 0, "skip": 0, "fail": 0, "missing": 0}
    for t in tests:
        r = results.get(t)
        counts[r.outcome() if r else "missing"] += 1
    counts["ran"] = counts["pass"] + counts["skip"] + counts["fail"]
    return counts


def combined(target):
    """Per test: 'fail' (failed somewhere), 'missing' (no verdict somewhere it was asked for),
    'pass' (passed somewhere) or 'skip' (skipped wherever it ran)."""
    out = OrderedDict()
    for t in target.all_tests():
        outcomes = []
        for label, names in target.tests.items():
            if t in names:
                r = target.results[label].get(t)
                outcomes.append(r.outcome() if r else "missing")
        if "fail" in outcomes:
            out[t] = "fail"
        elif "missing" in outcomes:
            out[t] = "missing"
        elif "pass" in outcomes:
            out[t] = "pass"
        else:
            out[t] = "skip"
    return out


def table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |")
    return "\n".join(lines)


def read_list(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def load_not_applicable(doc):
    """The (test, configuration, reason) rows between the not-applicable markers of DOC."""
    rows = []
    inside = False
    with open(doc) as f:
        for line in f:
            if "<!-- not-applicable:begin -->" in line:
                inside = True
            elif "<!-- not-applicable:end -->" in line:
                inside = False
            elif inside and line.startswith("|"):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                name = cells[0].strip("`")
                if len(cells) >= 3 and re.match(r"^(SCSI|iSCSI)\.[\w-]+\.[\w-]+$", name):
                    rows.append((name, cells[1].strip("`"), cells[2]))
    return rows


def select(names, patterns):
    """The names (FAMILY.SUITE.TEST) the iscsi-test-cu patterns select; '-PATTERN' removes."""
    def match(name, p):
        family, suite, test = name.split(".")
        parts = (p.split(".", 2) + ["*", "*"])[:3]
        return (fnmatch.fnmatchcase(family, parts[0]) and fnmatch.fnmatchcase(suite, parts[1])
                and fnmatch.fnmatchcase(test, parts[2]))
    chosen = []
    for name in names:
        if any(match(name, p) for p in patterns if not p.startswith("-")) and not any(
                match(name, p[1:]) for p in patterns if p.startswith("-")):
            chosen.append(name)
    return chosen


def plan(argv):
    if len(argv) < 5:
        sys.exit("usage: test_cu_report.py plan ALL DOC OUTDIR LABEL [-]PATTERN...")
    all_path, doc, outdir, label = argv[:4]
    names = [n for n in read_list(all_path) if n.count(".") == 2]
    chosen = select(names, argv[4:])
    for name, config, reason in load_not_applicable(doc):
        if name not in names:
            sys.exit(f"{doc}: {name} (not applicable) is not a test of iscsi-test-cu")
        if config == label and name in chosen:
            chosen.remove(name)
            print(f"{label}: leaving out {name}: {reason}", file=sys.stderr)
    if not chosen:
        sys.exit(f"no test matches {' '.join(argv[4:])}")
    with open(os.path.join(outdir, label + ".txt"), "w") as f:
        f.write("\n".join(chosen) + "\n")
    suites = OrderedDict()
    for name in chosen:
        suites.setdefault(name.rsplit(".", 1)[0], []).append(name)
    patterns = []
    for suite, members in suites.items():
        whole = [n for n in names if n.rsplit(".", 1)[0] == suite]
        patterns.extend([suite] if members == whole else members)
    with open(os.path.join(outdir, label + ".patterns"), "w") as f:
        f.write("\n".join(patterns) + "\n")
    return 0


def expand(argv):
    if len(argv) < 2:
        sys.exit("usage: test_cu_report.py expand ALL PATTERN...")
    names = [n for n in read_list(argv[0]) if n.count(".") == 2]
    out = select(names, argv[1:])
    if not out:
        sys.exit(f"no test matches {' '.join(argv[1:])}")
    print("\n".join(out))
    return 0


def report(argv):
    ap = argparse.ArgumentParser(prog="test_cu_report.py report")
    ap.add_argument("--allowed", required=True)
    ap.add_argument("--enforce", default=None)
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--target", action="append", default=[])
    ap.add_argument("--config", action="append", default=[])
    args = ap.parse_args(argv)
    # argparse loses the interleaving of --target and --config; walk argv for it.
    targets = []
    for i, arg in enumerate(argv[:-1]):
        if arg == "--target":
            targets.append(Target(argv[i + 1]))
        elif arg == "--config":
            if not targets:
                sys.exit("--config before --target")
            label, _, rest = argv[i + 1].partition("=")
            listfile, _, outs = rest.partition(":")
            t = targets[-1]
            t.tests[label] = read_list(listfile)
            suite_family = {}
            for name in t.tests[label]:
                family, suite, _ = name.split(".", 2)
                suite_family[suite] = family
            t.results[label] = {}
            t.summaries[label] = []
            t.skip_lines[label] = 0
            for path in outs.split(","):
                t.summaries[label].append(parse_output(path, suite_family, t.results[label]))
                with open(path, errors="replace") as f:
                    t.skip_lines[label] += sum(line.count("[SKIPPED]") for line in f)
    allowed = load_allowed(args.allowed)

    problems = []
    md = []
    side = OrderedDict()
    for target in targets:
        enforce = target.name == args.enforce
        print(f"\n=== {target.name}: iscsi-test-cu, families SCSI and iSCSI ===")
        header = ["configuration", "tests", "ran", "passed", "skipped", "failed", "missing",
                  "[SKIPPED] lines"]
        rows = []
        for label, names in target.tests.items():
            c = config_counts(names, target.results[label])
            rows.append([label, len(names), c["ran"], c["pass"], c["skip"], c["fail"],
                         c["missing"], target.skip_lines[label]])
        comb = combined(target)
        n = {k: sum(1 for v in comb.values() if v == k) for k in ("pass", "skip", "fail",
                                                                  "missing")}
        n["tests"] = len(comb)
        rows.append(["combined", len(comb), len(comb) - n["missing"], n["pass"], n["skip"],
                     n["fail"], n["missing"], sum(target.skip_lines.values())])
        t = table(header, rows)
        print(t)
        md.append(f"**{target.name}**\n\n{t}\n")
        side[target.name] = n

        for label, names in target.tests.items():
            for name in names:
                r = target.results[label].get(name)
                if r is None or r.outcome() == "missing":
                    print(f"MISSING {target.name}/{label}: {name} (no verdict)")
                    if enforce:
                        problems.append(f"{name} did not run in {label}")
                elif r.outcome() == "fail":
                    msgs = list(OrderedDict.fromkeys(r.failed_logs + r.asserts))
                    msg = "; ".join(msgs[:4]) or "no message"
                    if len(msg) > 400:
                        msg = msg[:400] + "..."
                    print(f"FAILED  {target.name}/{label}: {name}: {msg}")
                    if enforce:
                        problems.append(f"{name} failed in {label}")
        skipped = [t for t, v in comb.items() if v == "skip"]
        for name in skipped:
            reasons = sorted({s for res in target.results.values() if name in res
                              for s in res[name].skips})
            listed = name in allowed
            if enforce or not listed:
                print(f"SKIPPED {target.name}: {name}: {' / '.join(reasons)}"
                      f"{'' if listed else '  <-- not an allowed skip'}")
            if enforce and not listed:
                problems.append(f"{name} skipped in every configuration and is not listed in "
                                f"{args.allowed}")
        if enforce:
            for name in allowed:
                if not SKIPPABLE.match(name):
                    problems.append(f"{name} is listed as an allowed skip but is neither a "
                                    "removable-media nor a multipath test")
                elif name not in comb:
                    problems.append(f"{name} is listed as an allowed skip but was not run")
                elif comb[name] == "pass":
                    print(f"note: {name} is listed as an allowed skip but passed; "
                          "remove it from the list")
            for name, config, reason in load_not_applicable(args.allowed):
                if comb.get(name) != "pass":
                    problems.append(f"{name} is listed as not applicable to {config}, but did "
                                    "not pass in any other configuration")
            expected = len(comb) - len([a for a in allowed if a in comb])
            if n["pass"] < expected:
                problems.append(f"only {n['pass']} tests passed in some configuration; the "
                                f"allowed-skips list implies at least {expected}")

    if len(side) > 1:
        names = list(side)
        rows = [[k] + [side[t][k] for t in names]
                for k in ("tests", "pass", "skip", "fail", "missing")]
        t = table(["combined"] + names, rows)
        print(f"\n=== side by side ===\n{t}")
        md.append(f"**side by side (combined)**\n\n{t}\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(md))
    if problems:
        print(f"\nCONFORMANCE FAILED ({args.enforce}):")
        for p in problems:
            print(f"  - {p}")
        return 1
    if args.enforce:
        print(f"\nCONFORMANCE OK ({args.enforce}): 0 failures, only listed skips")
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "expand":
        return expand(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "plan":
        return plan(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        return report(sys.argv[2:])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
