"""Readers of the real and generated data sets (PBC, SegPC, TXL-PBC, BCCD fields, phantom cells and fields,
ImageFolder and Matek class folders): what training, evaluation and inference tools all read data through.

Where each set lives is :mod:`bmpipe.datasets.catalog`; single-cell crops are :mod:`~bmpipe.datasets.cell_data`
(streamed from disk by :mod:`~bmpipe.datasets.crop_store`); fields with their cells are
:mod:`~bmpipe.datasets.detector_data`.
"""
