"""The Restormer transformer block (fused, channels-last), method-agnostic.

One block maths, three implementations, one dispatcher:

========================  ==============================================================
``weights.py``            what a block is: :class:`BlockWeights` (fused tensors) and
                          :func:`merge_block_pair` (two blocks as one block-diagonal block)
``graph.py``              implementation 1, the definition: whole-tensor ops for autograd
``streamed.py``           implementation 2: no graph, streamed over bands of rows
``jvp.py``                implementation 3: the streamed path with forward-mode tangents
``block.py``              :func:`restormer_block_nhwc` (picks one of the three) and the
                          ``nn.Module`` s holding the parameters
========================  ==============================================================

``tests/test_networks.py`` checks that the three agree (see each file's docstring).
The public names are exported by :mod:`learnable_fusion_loss.nn`.
"""
