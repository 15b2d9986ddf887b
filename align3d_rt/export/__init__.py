"""align3d_rt.export"""
