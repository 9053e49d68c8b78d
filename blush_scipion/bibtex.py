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

@article{Rosenthal2003,
title = {Optimal determination of particle orientation, absolute hand, and contrast loss in single-particle electron cryomicroscopy},
author = {Rosenthal, Peter B. and Henderson, Richard},
journal = {Journal of Molecular Biology},
volume = {333},
number = {4},
pages = {721--745},
year = {2003},
doi = {10.1016/j.jmb.2003.07.013}
}

@article{Kimanius2021,
title = {New tools for automated cryo-EM single-particle analysis in RELION-4.0},
author = {Kimanius, Dari and Dong, Liyi and Sharov, Grigory and Nakane, Takanori and Scheres, Sjors H. W.},
journal = {Biochemical Journal},
volume = {478},
number = {24},
pages = {4169--4185},
year = {2021},
doi = {10.1042/BCJ20210708}
}

@article{Cappe2009,
title = {On-line expectation-maximization algorithm for latent data models},
author = {Capp{\'e}, Olivier and Moulines, Eric},
journal = {Journal of the Royal Statistical Society: Series B},
volume = {71},
number = {3},
pages = {593--613},
year = {2009},
doi = {10.1111/j.1467-9868.2009.00698.x}
}

@article{Cardone2013,
title = {One number does not fit all: mapping local variations in resolution in cryo-EM reconstructions},
author = {Cardone, Giovanni and Heymann, J. Bernard and Steven, Alasdair C.},
journal = {Journal of Structural Biology},
volume = {184},
number = {2},
pages = {226--236},
year = {2013},
doi = {10.1016/j.jsb.2013.08.002}
}
"""
