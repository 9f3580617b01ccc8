"""Building blocks of the sequential transformer family (:mod:`models.sasrec`).

* :mod:`models.sequential.windows`: item sequences as model inputs and training windows (numpy only);
* :mod:`models.sequential.network`: the transformer itself (imports torch: import it lazily);
* :mod:`models.sequential.distributed`: the ``torchrun`` / DistributedDataParallel plumbing (torch, lazily).
"""
