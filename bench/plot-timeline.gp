# SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
# plot-timeline.gp - the two-site demo's PNG: PingPong bandwidth over the
# job's time, the two migrations marked (examples/demo-two-site, docs/demo.md).
# gnuplot -e "datafile='pp.csv'; outfile='x.png'; subtitle='...';
#             ab1=..; ab2=..; ba1=..; ba2=.." plot-timeline.gp
# datafile: pingpong -csv output (t_s,msgs,mbps,max_gap_ms, one header line).
# ab1/ab2, ba1/ba2: the job's time (s) when each ninja-migrate started and
# ended (the migrated rank's clock does not count the stopped VM's pause).
if (!exists("subtitle")) subtitle = ""
set terminal pngcairo size 1200,520 font ",10"
set output outfile
set datafile separator ","
set key top right
set title "MPI PingPong across a two-site virtual cluster: bandwidth over time\n".subtitle
set xlabel "job time [s] (rank 0's clock)"
set ylabel "bandwidth [MB/s]"
set yrange [0:*]
set grid ytics
set style rect fc rgb "#f4c7a0" fs solid 0.5 noborder
set object 1 rect from ab1, graph 0 to ab2, graph 1 behind
set object 2 rect from ba1, graph 0 to ba2, graph 1 behind
set label 1 "ninja-migrate A->B\n(drain, unplug HCA,\nmove, TCP)" at ab2, graph 0.93 offset 0.5,0 left front
set label 2 "ninja-migrate B->A\n(move, plug HCA,\nverbs)" at ba2, graph 0.93 offset 0.5,0 left front
set label 3 "site A: verbs (rxe0)" at graph 0.01, graph 0.03 left front
plot datafile every ::1 using 1:3 with linespoints lw 2 pt 7 ps 0.5 lc rgb "#1f5fa8" title "PingPong MB/s (per interval)"
