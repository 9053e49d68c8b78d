"""
@article{Kimanius2024,
title = {Data-driven regularization lowers the size barrier of cryo-EM structure determination},
author = {Kimanius, Dari and Jamali, Kiarash and Wilkinson, Max E. and Lövestam, Sofia and Velazhahan, Vaithish and Nakane, Takanori and Scheres, Sjors H. W.},
journal = {Nature Methods},
volume = {21},
pages = {1216--1221},
year = {2024},
doi = {10.1038/s41592-024-02304-8}
}

@article{Scheres2012,
title = {RELION: Implementation of a Bayesian approach to cryo-EM structure determination},
author = {Scheres, Sjors H. W.},
journal = {Journal of Structural Biology},
volume = {180},
number = {3},
pages = {519--530},
year = {2012},
doi = {10.1016/j.jsb.2012.09.006}
}

@article{Chen2013,
title = {High-resolution noise substitution to measure overfitting and validate resolution in 3D structure determination by single particle electron cryomicroscopy},
author = {Chen, Shaoxia and McMullan, Greg and Faruqi, Abdul R. and Murshudov, Garib N. and Short, Judith M. and Scheres, Sjors H. W. and Henderson, Richard},
journal = {Ultramicroscopy},
volume = {135},
pages = {24--35},
year = {2013},
doi = {10.1016/j.ultramic.2013.06.004}
}
"""
