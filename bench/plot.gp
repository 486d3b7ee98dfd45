# SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
# plot.gp - bench/run's PNG: latency (0 B - 1 KiB) and bandwidth (1 KiB up).
# gnuplot -e "datafile='...'; outfile='...'; subtitle='...'; have_ninja=0|1" plot.gp
# Data: block 0 (latency) and block 1 (bandwidth), columns
#   bytes tcp ninja floor ratio label   (NaN where there is no value)
if (!exists("have_ninja")) have_ninja = 1
set terminal pngcairo size 1400,560 font ",10"
set output outfile
set datafile missing "NaN"
set multiplot layout 1,2 title "btl/ninja vs btl/tcp vs raw TCP floor (loopback)\n".subtitle

lat_ninja = have_ninja ? \
	", '' index 0 using 0:3 with linespoints lw 2 pt 5 title 'btl/ninja'" : ""
bw_ninja = have_ninja ? \
	", '' index 1 using 1:3 with linespoints lw 2 pt 5 title 'btl/ninja'" : ""

set title "PingPong latency (half round trip)"
set xlabel "message size [bytes]"
set ylabel "t [usec]"
set yrange [0:*]
set grid ytics
set key top left
set xtics rotate by -45
plot datafile index 0 using 0:2:xticlabels(6) with linespoints lw 2 pt 7 title "btl/tcp" @lat_ninja, \
     ''       index 0 using 0:4 with points pt 9 ps 2 title "raw TCP floor"

set title "PingPong bandwidth"
set logscale x 2
set xrange [800:20000000]
set xtics ("1K" 1024, "4K" 4096, "16K" 16384, "64K" 65536, "256K" 262144, \
	   "1M" 1048576, "4M" 4194304, "16M" 16777216)
set ylabel "MB/s (10^6 B/s)"
set key top left
plot datafile index 1 using 1:2 with linespoints lw 2 pt 7 title "btl/tcp" @bw_ninja, \
     ''       index 1 using 1:4 with points pt 9 ps 2 title "raw TCP floor"
unset multiplot
