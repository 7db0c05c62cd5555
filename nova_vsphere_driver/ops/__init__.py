"""Instance operations beyond the basic lifecycle, one concern per module.

Each module holds the logic of one group of ComputeDriver operations; the
driver's methods only delegate to it. Modules use the driver's shared
clients (session, inventory reader, VM operations, DRS, rules) through the
driver object they are given.
"""
