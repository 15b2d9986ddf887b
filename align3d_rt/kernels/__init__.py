"""align3d_rt.kernels"""
