"""The syscall seam: ``api`` (the Syscalls Protocol and kernel constants),
``linux`` (the real implementation, over cffi) and ``recording`` (the test
double).  Kept empty so importing the package never loads cffi.
"""
