#!/usr/bin/env python3
"""Fails if a Catch2 TEST_CASE name holds a ';'. catch_discover_tests hands
names to ctest as a CMake list, so "a; b" became two ctest tests that matched
no test case and passed without running anything."""
import pathlib
import re
import sys

bad = []
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.cc")):
    text = path.read_text()
    for m in re.finditer(r'TEST_CASE\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)', text):
        name = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))
        if ";" in name:
            bad.append(f"{path.name}: {name}")
for line in bad:
    print("test name with ';':", line)
sys.exit(1 if bad else 0)
