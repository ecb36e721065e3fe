"""An example Django project whose views call an AI gateway with end-to-end correlation."""
