"""The fused two-stream network (Feichtenhofer, Pinz, Zisserman, CVPR 2016), its contract,
checkpoints, the procedural gesture generator and training."""
