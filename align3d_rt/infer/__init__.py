"""align3d_rt.infer"""
