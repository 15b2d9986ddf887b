"""align3d_rt.model"""
