"""align3d_rt.train"""
