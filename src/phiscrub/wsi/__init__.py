"""Whole-slide images: vendor formats, label and macro images, annotation files.

One registry (:mod:`phiscrub.wsi.registry`), one module per vendor format, one entry
function per job, after pydicom's decoder registry.
"""
