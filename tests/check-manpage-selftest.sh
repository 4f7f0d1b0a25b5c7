#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Shows that tests/check-manpage.py fails when the man page and --help drift
# apart: it is run on altered copies of the man page, and against a wrapper
# whose --help advertises an option the program does not have, and each run
# must fail naming the difference.
# usage: check-manpage-selftest.sh LAZYIMG MANPAGE
set -euo pipefail
lazyimg=$1 man=$2
check=$(dirname "$0")/check-manpage.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# expect_fail NAME PATTERN LAZYIMG MANPAGE: the check fails and says PATTERN
expect_fail() {
  local name=$1 pattern=$2 out rc=0
  out=$(python3 "$check" "$3" "$4" 2>&1) || rc=$?
  if [ "$rc" -ne 1 ]; then
    echo "FAIL $name: the check exited $rc, not 1:"; echo "$out"; fail=1
  elif ! grep -qF -- "$pattern" <<<"$out"; then
    echo "FAIL $name: the check did not say '$pattern':"; echo "$out"; fail=1
  else
    echo "ok   $name: $(grep -F -- "$pattern" <<<"$out" | head -1 | sed 's/^ *//')"
  fi
}

# the altered man pages need no run of every option (about 100 processes each;
# the manpage test runs them for the real one)
export CHECK_MANPAGE_SKIP_ACCEPT=1
python3 "$check" "$lazyimg" "$man" >/dev/null || { echo "FAIL: the real man page does not pass"; exit 1; }

# an option the man page documents for mount that mount does not have
sed '/^\.SS mount$/,/^\.SS /{s/^\\fB\\-\\-no\\-cache\\fR$/&\n.TP\n\\fB\\-\\-fake\\-option\\fR \\fIX\\fR\nnot an option/}' "$man" >"$tmp/extra.1"
expect_fail "man page lists an option --help lacks" \
  "mount --help: --fake-option X is in the man page's 'mount' section but not in --help" \
  "$lazyimg" "$tmp/extra.1"

# an option of mount --help the man page leaves out
python3 - "$man" "$tmp/missing.1" <<'EOF'
import sys
lines = open(sys.argv[1]).read().split("\n")
out, i, in_mount = [], 0, False
while i < len(lines):
    l = lines[i]
    if l.startswith(".SS"):
        in_mount = l == ".SS mount"
    if in_mount and l == ".TP" and lines[i + 1] == r"\fB\-\-no\-cache\fR":
        i += 3  # .TP, tag, one line of text
        continue
    out.append(l)
    i += 1
open(sys.argv[2], "w").write("\n".join(out))
EOF
expect_fail "--help has an option the man page lacks" \
  "mount --help: --no-cache is in --help but not in the man page's 'mount' section" \
  "$lazyimg" "$tmp/missing.1"

# another argument placeholder, another short form
sed '/^\.SS umount$/,/^\.SS /s/^\\fB\\-\\-timeout\\fR \\fISECONDS\\fR$/\\fB\\-\\-timeout\\fR \\fIS\\fR/' "$man" >"$tmp/arg.1"
expect_fail "placeholder differs" \
  "umount --help: --timeout: --help gives the argument SECONDS, the man page S" "$lazyimg" "$tmp/arg.1"
sed '/^\.SS umount$/,/^\.SS /s/^\\fB\\-z\\fR, \\fB\\-\\-lazy\\fR$/\\fB\\-\\-lazy\\fR/' "$man" >"$tmp/short.1"
expect_fail "short form differs" \
  "umount --help: --lazy: --help gives the short form -z, the man page (none)" "$lazyimg" "$tmp/short.1"

# a command without a subsection
sed 's/^\.SS overlay$/.SS overlays/' "$man" >"$tmp/cmd.1"
expect_fail "command without subsection" "the man page has no subsection '.SS overlay'" \
  "$lazyimg" "$tmp/cmd.1"

# a page that does not render cleanly (an unknown macro)
if command -v man >/dev/null; then
  sed 's/^\.SS status$/.XX bogus\n&/' "$man" >"$tmp/warn.1"
  expect_fail "rendering warning" "man --warnings -l $tmp/warn.1:" "$lazyimg" "$tmp/warn.1"
fi

# --help advertises an option the parser does not know (and the man page too)
cat >"$tmp/lazyimg" <<EOF
#!/bin/bash
if [ "\$1" = status ] && [ "\${!#}" = --help ]; then
  "$lazyimg" "\$@" | sed 's/^  --json /  --fake-flag  a flag\n&/'
  exit \${PIPESTATUS[0]}
fi
exec "$lazyimg" "\$@"
EOF
chmod +x "$tmp/lazyimg"
unset CHECK_MANPAGE_SKIP_ACCEPT # this case is about the options the program accepts
sed '/^\.SS status$/,/^\.SS /{s/^\\fB\\-\\-json\\fR$/\\fB\\-\\-fake\\-flag\\fR\na flag\n.TP\n&/}' "$man" >"$tmp/fake.1"
expect_fail "--help lists an option the program rejects" \
  "status --help: --fake-flag is in --help but the program says:" "$tmp/lazyimg" "$tmp/fake.1"
expect_fail "--help lists an option the man page lacks" \
  "status --help: --fake-flag is in --help but not in the man page's 'status' section" \
  "$tmp/lazyimg" "$man"

exit $fail
