"""Unit tests draw without a screen.  (Only this process: notebook kernels started by nbval
keep their inline backend, so stored figures stay figures.)"""
import matplotlib

matplotlib.use("Agg")
