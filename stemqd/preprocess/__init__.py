"""Preprocessing of an image stack, in the order the methods apply it.

Modules (loaded on first use; their public names are also available here):

* ``align``: drift correction of the frames (:func:`align_frames`)
* ``background``: rolling-ball background removal (:func:`remove_background`)
* ``denoise``: Anscombe-transformed Du filter (:func:`du_filter`)
* ``probe``: the aberrated probe as a PSF (:func:`probe_psf`)
* ``deconvolve``: blind Richardson-Lucy (:func:`deconvolve_blind`)
* ``normalise``: intensities as fractions of the incident beam (:func:`normalise_intensity`)
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=["align", "background", "deconvolve", "denoise", "normalise", "probe"],
    submod_attrs={
        "align": ["align_frames"],
        "background": ["disk_radius_px", "remove_background"],
        "deconvolve": ["deconvolve_blind"],
        "denoise": ["du_filter", "anscombe_forward", "anscombe_inverse"],
        "normalise": ["normalise_intensity", "normalised_volume"],
        "probe": ["probe_psf", "psf_fwhm_A"],
    },
)
