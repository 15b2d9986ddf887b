"""align3d_rt.data"""
