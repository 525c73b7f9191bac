# pgcopydb: the performance anchor the transfer benchmark compares against
# (benches/transfer.rs and ../shared/bench/anchors.sh method c).
apt_install pgcopydb
