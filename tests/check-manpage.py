#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks that docs/lazyimg.1 and the --help texts of lazyimg agree.

usage: check-manpage.py LAZYIMG MANPAGE

The man page is the one reference for the options of every command, so it
must not drift from what the program says and accepts:

  * every command of "lazyimg --help" has a subsection ".SS CMD" in the man
    page's COMMANDS section, and every such subsection is a command (a
    sub-command with a help text of its own, e.g. "cache stats", would get
    ".SS cache stats"; without one it is checked against ".SS cache");
  * every option of "lazyimg CMD --help" (short and long, with its argument
    placeholder) is a ".TP" tag in that subsection, and every option tag of
    the subsection is in CMD's --help, with the same short form and the same
    placeholder; the options of "lazyimg --help" itself are the OPTIONS
    section;
  * every option of a --help text is accepted by the program: "lazyimg CMD
    OPTION[=VALUE] --help" must print CMD's help without a getopt complaint
    (so a --help line cannot advertise an option the parser lacks, nor show
    an argument for an option that takes none, or the reverse).

-h/--help of the commands is said once in the man page (every command takes
it), so it is left out of the comparison; it is exercised by every run here.

Options in --help are read from option lines (an indent of at most 8
spaces, then "-x, --name ARG" or "--name ARG") and from bracketed forms such
as "[--size SIZE]" or "[-z|--lazy]" (usage and command lines). Prints every
difference and exits 1 when there is any.
"""
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile

OPT_LINE = re.compile(
    r"^ {1,8}(?:(-[A-Za-z0-9])(?:, |$|(?=\s)))?(--[a-z0-9][a-z0-9-]*)?(?:[ =]([A-Z][A-Z0-9_.]*))?(?=\s|$)"
)
BRACKET = re.compile(
    r"\[(?:(-[A-Za-z0-9])\|?)?(--[a-z0-9][a-z0-9-]*)?(?: ([A-Z][A-Z0-9_.]*))?\]"
)
MAN_TAG = re.compile(
    r"^(-[A-Za-z0-9])?(?:, )?(--[a-z0-9][a-z0-9-]*)?(?:[ =]([A-Z][A-Z0-9_.]*))?(?:\s|$)"
)
GETOPT_COMPLAINTS = (
    "unrecognized option",
    "invalid option",
    "requires an argument",
    "doesn't allow an argument",
    "is ambiguous",
)
# A value each placeholder accepts, for the acceptance run (parse errors other
# than getopt's are tolerated there, but a valid value keeps the run short).
PLACEHOLDER_VALUES = {
    "N": "1",
    "SIZE": "1M",
    "RATE": "1M",
    "SECONDS": "1",
    "R": "us-east-1",
    "URL": "http://127.0.0.1:9",
    "NAME": "pbs",
    "PATH": "vm/1/2020-01-01T00:00:00Z",
}


class Option:
    """One option: its long name (or the short one when it has none)."""

    def __init__(self, short, long, arg):
        self.short, self.long, self.arg = short, long, arg

    @property
    def key(self):
        return self.long or self.short

    def __str__(self):
        names = ", ".join(n for n in (self.short, self.long) if n)
        return names + (" " + self.arg if self.arg else "")


def add_option(opts, where, short, long, arg, errors, origin):
    if not short and not long:
        return
    o = Option(short, long, arg)
    old = opts.get(o.key)
    if old is None:
        opts[o.key] = o
        return
    # the same option seen twice (usage line and option line): merge
    if old.short and short and old.short != short:
        errors.append(f"{where}: {o.key}: {origin} gives it as {old.short} and as {short}")
    if old.arg and arg and old.arg != arg:
        errors.append(f"{where}: {o.key}: {origin} gives its argument as {old.arg} and as {arg}")
    old.short = old.short or short
    old.arg = old.arg or arg


def help_options(text, where, errors):
    opts = {}
    for line in text.splitlines():
        m = OPT_LINE.match(line)
        if m:
            add_option(opts, where, m.group(1), m.group(2), m.group(3), errors, "--help")
        for m in BRACKET.finditer(line):
            add_option(opts, where, m.group(1), m.group(2), m.group(3), errors, "--help")
    return opts


def unroff(s):
    """Text of a roff line: macro name, fonts and escapes removed."""
    s = re.sub(r"^\.(?:B|I|BR|RB|BI|IB|IR|RI)\s+", "", s)
    s = s.replace('"', "")
    s = re.sub(r"\\f(?:\[[^]]*\]|\(..|.)", "", s)
    s = s.replace("\\-", "-").replace("\\&", "").replace("\\|", "").replace("\\ ", " ")
    s = s.replace("\\e", "\\")
    return s.strip()


def man_sections(path):
    """{command: {key: Option}} from the COMMANDS subsections; "" = OPTIONS."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    sections, errors = {}, []
    sh = ss = None
    for i, line in enumerate(lines):
        if line.startswith(".SH"):
            sh = unroff(line[3:])
            ss = "" if sh == "OPTIONS" else None
            if ss is not None:
                sections.setdefault(ss, {})
            continue
        if line.startswith(".SS") and sh == "COMMANDS":
            ss = unroff(line[3:])
            if ss in sections:
                errors.append(f"man page: two subsections '{ss}' in COMMANDS")
            sections.setdefault(ss, {})
            continue
        if ss is None or line.strip() != ".TP" or i + 1 >= len(lines):
            continue
        tag = unroff(lines[i + 1])
        if not tag.startswith("-"):
            continue
        m = MAN_TAG.match(tag)
        if not m or not (m.group(1) or m.group(2)):
            errors.append(f"man page line {i + 2}: option tag not understood: {tag!r}")
            continue
        add_option(sections[ss], f"man page '{ss or 'OPTIONS'}'", m.group(1), m.group(2),
                   m.group(3), errors, "the man page")
    return sections, errors


def render_warnings(manpage):
    """The page must format without a warning (man-db and groff: contrib/deps.txt)."""
    if not shutil.which("man"):
        print("note: man is not installed; the page's rendering is not checked", file=sys.stderr)
        return []
    env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80")
    p = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", manpage], env=env,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    out = [f"man --warnings -l {manpage}: {l}" for l in p.stderr.splitlines() if l.strip()]
    if p.returncode != 0 and not out:
        out.append(f"man --warnings -l {manpage}: exit {p.returncode}")
    return out


def run(argv, cwd):
    p = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=30,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def commands_of(top_help):
    """[(command, [sub-commands])] from the Commands: block of lazyimg --help."""
    cmds, inside = [], False
    for line in top_help.splitlines():
        if line.strip() == "Commands:":
            inside = True
            continue
        if inside and not line.strip():
            break
        m = re.match(r"^  ([a-z][a-z0-9-]*)(?: (\S+))?", line) if inside else None
        if m:
            subs = m.group(2).split("|") if m.group(2) and "|" in m.group(2) else []
            cmds.append((m.group(1), subs))
    return cmds


def compare(where, section, helpopts, manopts, errors):
    for key in sorted(set(helpopts) - set(manopts)):
        errors.append(f"{where}: {helpopts[key]} is in --help but not in the man page's "
                      f"'{section}' section")
    for key in sorted(set(manopts) - set(helpopts)):
        errors.append(f"{where}: {manopts[key]} is in the man page's '{section}' section "
                      f"but not in --help")
    for key in sorted(set(helpopts) & set(manopts)):
        h, m = helpopts[key], manopts[key]
        if h.short != m.short:
            errors.append(f"{where}: {key}: --help gives the short form {h.short or '(none)'}, "
                          f"the man page {m.short or '(none)'}")
        if h.arg != m.arg:
            errors.append(f"{where}: {key}: --help gives the argument {h.arg or '(none)'}, "
                          f"the man page {m.arg or '(none)'}")


def check_accepted(lazyimg, argv_cmd, helptext, opts, where, errors, cwd):
    runs = []
    for key, o in sorted(opts.items()):
        if key in ("--help", "-h"):
            continue
        name = o.long or o.short
        if o.arg:
            value = PLACEHOLDER_VALUES.get(o.arg, "/nonexistent")
            arg = [f"{name}={value}"] if o.long else [name, value]
        else:
            arg = [name]
        runs.append((o, name, arg))
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda r: run([lazyimg] + argv_cmd + r[2] + ["--help"], cwd), runs))
    for (o, name, arg), (rc, out, err) in zip(runs, results):
        complaint = next((c for c in GETOPT_COMPLAINTS if c in err), None)
        if complaint:
            errors.append(f"{where}: {o} is in --help but the program says: {err.strip()}")
        elif not o.arg and (rc != 0 or out != helptext):
            errors.append(f"{where}: '{' '.join(argv_cmd + arg)} --help' did not print the help "
                          f"(exit {rc}: {err.strip()!r}); does {name} take an argument?")


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    lazyimg, manpage = os.path.abspath(sys.argv[1]), sys.argv[2]
    errors, checked = [], 0
    man, man_errors = man_sections(manpage)
    errors += man_errors
    errors += render_warnings(manpage)
    with tempfile.TemporaryDirectory(prefix="check-manpage.") as cwd:
        rc, top, err = run([lazyimg, "--help"], cwd)
        if rc != 0 or not top:
            print(f"lazyimg --help failed (exit {rc}): {err}", file=sys.stderr)
            return 1
        top_opts = help_options(top.split("Commands:")[0] + "\n".join(
            l for l in top.splitlines() if re.match(r"^  -", l)), "lazyimg", errors)
        compare("lazyimg --help", "OPTIONS", top_opts, man.get("", {}), errors)
        checked += len(top_opts)

        commands = commands_of(top)
        if not commands:
            errors.append("lazyimg --help lists no commands (Commands: block not found)")
        seen = {""}
        for cmd, subs in commands:
            rc, text, err = run([lazyimg, cmd, "--help"], cwd)
            if rc != 0 or not text.strip():
                errors.append(f"lazyimg {cmd} --help: exit {rc}, {err.strip()!r}")
                continue
            units = [([cmd], text)]
            for sub in subs:
                rc, subtext, _ = run([lazyimg, cmd, sub, "--help"], cwd)
                if rc == 0 and subtext.strip() and subtext != text:
                    units.append(([cmd, sub], subtext))
            for argv_cmd, helptext in units:
                name = " ".join(argv_cmd)
                where = f"lazyimg {name} --help"
                opts = help_options(helptext, where, errors)
                opts.pop("--help", None)
                section = name if name in man else argv_cmd[0]
                if section not in man:
                    errors.append(f"{where}: the man page has no subsection '.SS {section}' "
                                  f"in COMMANDS")
                    continue
                seen.add(section)
                manopts = dict(man[section])
                manopts.pop("--help", None)
                compare(where, section, opts, manopts, errors)
                # (the self-test skips this where it alters only the man page)
                if not os.environ.get("CHECK_MANPAGE_SKIP_ACCEPT"):
                    check_accepted(lazyimg, argv_cmd, helptext, opts, where, errors, cwd)
                checked += len(opts)
        for section in sorted(set(man) - seen):
            errors.append(f"man page: subsection '.SS {section}' is not a command of "
                          f"lazyimg --help")
    if errors:
        print(f"{manpage} and lazyimg --help differ ({len(errors)}):", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 1
    print(f"man page and --help agree: {len(commands)} commands, {checked} options")
    return 0


if __name__ == "__main__":
    sys.exit(main())
