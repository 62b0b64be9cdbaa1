"""The analyses rules share, each computed from a `core.module.ParsedModule`: the model of the Function
classes, value kinds and value flow, gradient reach, aliasing and in-place writes, returned gradients,
state writes at runtime, and which packages take second derivatives.

A false positive that several rules share is fixed here once; the rules follow.
"""
