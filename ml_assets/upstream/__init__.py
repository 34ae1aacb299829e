"""Stand-ins for the upstream systems a pipeline reads from, for its publisher to serve its
data through: no part of the platform (which never imports them), and they import none of it."""
