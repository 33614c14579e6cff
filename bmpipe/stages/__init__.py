"""Pipeline stages as plain functions: smear regions, detection, classification, aggregation.

Each takes and returns typed records (``Slide``, ``SmearMap``, ``Cells``, ``Differential``) and runs without
Prefect, so it is tested directly; ``flows/`` only chains them.
"""
