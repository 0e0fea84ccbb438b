"""The platform's shared library: what more than one service needs, in subpackages named for what they are.

`config` (every process's settings) sits at the top level; the rest is grouped
by concern, lower layers never importing higher ones.  The map and the
dependency direction are in this library's README.md.
"""
