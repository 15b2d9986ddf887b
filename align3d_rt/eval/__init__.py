"""align3d_rt.eval"""
