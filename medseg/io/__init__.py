"""Stage 1: find the CT series in what the user hands us, read it with its exact geometry, check that geometry,
and write results back without ever leaving half a file behind."""
