"""Compression between training and export (needs the ``train`` extra): structured pruning
(:mod:`.prune`, on torch-pruning) and int8 quantisation, QAT and PTQ (:mod:`.quantize`).

Both fine-tune through the project's trainer (:class:`sr_edge.train.TrainHooks`), write
checkpoints that record what they are, and export to ordinary bundles. The verbs are
``sr_edge.prune(PruneConfig)`` and ``sr_edge.quantize(QuantConfig)`` (here:
``sr_edge.compress.prune.prune`` and ``sr_edge.compress.quantize.quantize``; a package
attribute cannot be both a function and the submodule of the same name). Importing this
package imports no torch.
"""
