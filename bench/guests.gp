# SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
# guests.gp - bench/guests' PNG: same-run ratios (left) and MB/s (right).
# gnuplot -e "datafile='...'; outfile='...'; subtitle='...'" guests.gp
# Data columns: bytes r_tcp r_bw r_lat tcp ntcp nverbs lat bw tcps ntcps
# nverbss sbw r_tcps r_sbw_wr r_sbw_s (NaN: none; a column not run is NaN)
set terminal pngcairo size 1400,560 font ",10"
set output outfile
set datafile missing "NaN"
set multiplot layout 1,2 title "btl/ninja in two TCG guests: rails vs btl/tcp and raw verbs (perftest)\n".subtitle
set logscale x 2
set xtics ("1" 1, "1K" 1024, "4K" 4096, "16K" 16384, "64K" 65536, "256K" 262144, \
	   "1M" 1048576, "4M" 4194304)
set xlabel "message size [bytes]"
set grid ytics
set key top left
set title "same-run ratios (median of rounds); targets dashed"
set ylabel "ratio"
set yrange [0:*]
plot datafile using 1:2 with linespoints lw 2 pt 7 title "TCP rail / btl/tcp (MB/s, >= 1.0)", \
     '' using 1:3 with linespoints lw 2 pt 5 title "verbs rail / ib\\_write\\_bw (MB/s, >= 0.9)", \
     '' using 1:4 with linespoints lw 2 pt 9 title "verbs rail / ib\\_send\\_lat (latency, <= 1.2)", \
     '' using 1:14 with linespoints lw 2 dt 4 pt 7 title "streams: TCP rail / btl/tcp (>= 1.0)", \
     '' using 1:15 with linespoints lw 2 dt 4 pt 5 title "streams: verbs rail / ib\\_write\\_bw (>= 0.9)", \
     '' using 1:16 with linespoints lw 2 dt 4 pt 11 title "streams: verbs rail / ib\\_send\\_bw (>= 0.9)", \
     1.0 with lines dt 2 lc rgb "black" notitle, 0.9 with lines dt 3 lc rgb "gray40" notitle, \
     1.2 with lines dt 3 lc rgb "gray40" notitle
set title "bandwidth: PingPong (solid), streams (dashed); perftest: its own"
set ylabel "MB/s (10^6 B/s)"
set logscale y
set yrange [*:*]
plot datafile using 1:5 with linespoints lw 2 pt 7 title "btl/tcp", \
     '' using 1:6 with linespoints lw 2 pt 5 title "ninja TCP rail", \
     '' using 1:7 with linespoints lw 2 pt 9 title "ninja verbs rail", \
     '' using 1:8 with points pt 4 ps 1.5 title "ib\\_send\\_lat (size/t)", \
     '' using 1:9 with points pt 6 ps 1.5 title "ib\\_write\\_bw", \
     '' using 1:10 with linespoints lw 2 dt 4 pt 7 title "btl/tcp stream", \
     '' using 1:11 with linespoints lw 2 dt 4 pt 5 title "ninja TCP rail stream", \
     '' using 1:12 with linespoints lw 2 dt 4 pt 9 title "ninja verbs rail stream", \
     '' using 1:13 with points pt 8 ps 1.5 title "ib\\_send\\_bw"
unset multiplot
