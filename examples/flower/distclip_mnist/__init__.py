"""distclip's Clip21 and CELGC on the bundled MNIST CNN as a Flower app."""
