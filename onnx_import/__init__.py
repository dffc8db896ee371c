"""Importing DLRMs exported to ONNX: find embedding bags, lift tables out, cut the dense rest."""
