# pgcopydb: the performance anchor the transfer benchmark compares against
# (benches/compare.rs, method c).
apt_install pgcopydb
