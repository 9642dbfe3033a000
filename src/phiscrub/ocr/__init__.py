"""Burned-in text: find it (engine, rapid, prepare) and decide what identifies (phi_match).

Nothing is imported here: the OCR stack (onnxruntime, models) loads only when a file
actually needs pixel work.
"""
