#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""nlink_check.py ROOT: every directory under ROOT reports st_nlink 1 (its
subdirectories not counted) or exactly 2 + its subdirectories, as find and
fts take it. Prints the ones that do not, exits 1 then."""
import os
import stat
import sys

bad, dirs = [], 0
for top, subdirs, _ in os.walk(sys.argv[1]):
    n = os.lstat(top).st_nlink
    dirs += 1
    real = sum(1 for d in subdirs if stat.S_ISDIR(os.lstat(os.path.join(top, d)).st_mode))
    if n != 1 and n != 2 + real:
        bad.append("%s: nlink %d, %d subdirectories" % (top, n, real))
print("\n".join(bad) if bad else "%d directories" % dirs)
sys.exit(1 if bad else 0)
