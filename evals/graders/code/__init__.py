"""Code graders: a sandbox for untrusted Python, a unit-test runner (stdin/stdout and call-based problems) and
HumanEval+/MBPP+ through evalplus's own evaluation functions. Imports stay lazy: the sandbox's worker imports
modules from this package inside the jail, where only the standard library is guaranteed."""
