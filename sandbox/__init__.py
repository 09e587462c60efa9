"""Data sandbox: usable but not visible (数据可用不可见).

Kept free of imports on purpose: the analysis image ships only ``sandbox.sdk``,
and importing the package there must not pull in the control plane.
"""
