"""align3d_rt.render"""
