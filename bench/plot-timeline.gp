# SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
# plot-timeline.gp - the two-site demo's PNG: PingPong bandwidth over the
# job's time, the two migrations marked, each phase's mean drawn over its
# intervals (examples/demo-two-site, docs/demo.md).  Everything plotted is
# measured: the points are pingpong's intervals, the means are computed
# by the scenario from those same intervals, the line (smooth) is a mean
# of the intervals within +-2 s that lie in the same phase.
# gnuplot -e "datafile='pp.csv'; outfile='x.png'; ab1=..; ab2=..; ba1=..; ba2=..;
#             m0=..; m1=..; m2=..; siteA='...'; siteB='...'; emul='...';
#             emul2='...'; smooth='pp-smooth.csv'" plot-timeline.gp
# datafile: pingpong -csv output (t_s,msgs,mbps,max_gap_ms, one header line).
# ab1/ab2, ba1/ba2: the job's time (s) when each ninja-migrate started and
# ended (the migrated rank's clock does not count the stopped VM's pause).
# m0/m1/m2 (optional): mean MB/s before, between and after the migrations.
# siteA/siteB (optional): each site's name and rail, a few words each;
# emul, emul2 (optional): the subtitle's lines, what is emulated and how.
# smooth (optional): t_s,MB/s lines (no header), the moving mean drawn as
# the line; without it the intervals are joined.
# phases (optional): "START END NAME LANE START END NAME LANE ..." (job
# time, s): the phases of the migrations from ninja-migrate's --events
# streams (bench/phases-from-events), drawn as coloured spans in a band at
# the bottom (overlapping phases in lanes above each other), one colour per
# phase, in the key.
if (!exists("emul")) emul = ""
if (exists("emul2")) emul = emul."\n".emul2
if (!exists("siteA")) siteA = "site A"
if (!exists("siteB")) siteB = "site B"
set terminal pngcairo noenhanced size 1200,640 font ",10"
set output outfile
set datafile separator ","
stats datafile every ::1 using 1:3 nooutput
tend = STATS_max_x
ytop = STATS_max_y * 1.45
set key below maxcols 1
set bmargin 7
set title "MPI PingPong (every byte checked) across a two-site virtual cluster under QEMU/TCG: bandwidth over time\n".emul
set xlabel "job time [s] (rank 0's clock; a stopped VM's pause does not count)"
set ylabel "bandwidth [MB/s] per 0.5 s interval"
set xrange [0:tend]
set yrange [0:ytop]
set grid ytics
set style rect fc rgb "#f4c7a0" fs solid 0.5 noborder
set object 1 rect from ab1, graph 0 to ab2, graph 1 behind
set object 2 rect from ba1, graph 0 to ba2, graph 1 behind
set label 1 "ninja-migrate A -> B (drain, unplug HCA, move)" at (ab1 + ab2) / 2, graph 0.45 center rotate by 90 front
set label 2 "ninja-migrate B -> A (move, plug HCA)" at (ba1 + ba2) / 2, graph 0.45 center rotate by 90 front
fmt(m) = sprintf("%.2f MB/s", m)
# The phases of the migrations (--events): a band at the bottom.
pcolor(n) = n eq "drain" ? "#8e44ad" : n eq "unplug" ? "#c0392b" : \
	n eq "start" ? "#7f8c8d" : n eq "storage" ? "#d35400" : \
	n eq "ram" ? "#27ae60" : n eq "switch" ? "#000000" : \
	n eq "plug" ? "#e84393" : n eq "link-up" ? "#f1c40f" : \
	n eq "reconnect" ? "#16a085" : "#95a5a6"
pnames = ""
if (exists("phases")) {
	plane = 0
	do for [i = 1:words(phases) / 4] {
		ps = real(word(phases, 4 * i - 3))
		pe = real(word(phases, 4 * i - 2))
		pn = word(phases, 4 * i - 1)
		pl = int(word(phases, 4 * i))
		if (pl > plane) { plane = pl }
		if (pe - ps < tend / 600.0) { pe = ps + tend / 600.0 }
		set object (100 + i) rect from ps, graph 0.035 * pl to pe, graph 0.035 * pl + 0.03 fc rgb pcolor(pn) fs solid 1.0 noborder front
		if (strstrt(" ".pnames." ", " ".pn." ") == 0) { pnames = pnames." ".pn }
	}
	set label 6 "phases (ninja-migrate --events)" at graph 0.005, graph 0.035 * plane + 0.055 left front font ",8"
	set key below maxcols 3 width -8
	set bmargin 10
	set terminal pngcairo noenhanced size 1200,720 font ",10"
	set output outfile
}
# Phase labels: the first from the left edge, the middle one lower (a
# short phase must not run into its neighbours).
lA = siteA
lB = siteB
lC = siteA
if (exists("m0")) {
	set arrow 10 from 0, m0 to ab1, m0 nohead lw 3 dt 2 lc rgb "#c0392b" front
	set arrow 11 from ab2, m1 to ba1, m1 nohead lw 3 dt 2 lc rgb "#c0392b" front
	set arrow 12 from ba2, m2 to tend, m2 nohead lw 3 dt 2 lc rgb "#c0392b" front
	lA = lA."\nmean ".fmt(m0)
	lB = lB."\nmean ".fmt(m1)
	lC = lC."\nmean ".fmt(m2)
}
set label 3 lA at graph 0.01, graph 0.95 left front
set label 4 lB at (ab2 + ba1) / 2, graph 0.82 center front
set label 5 lC at (ba2 + tend) / 2, graph 0.95 center front
if (exists("smooth")) {
	plot datafile every ::1 using 1:3 with points pt 7 ps 0.5 lc rgb "#9db8d9" title "PingPong MB/s per 0.5 s interval (measured)", \
	     smooth using 1:2 with lines lw 2.5 lc rgb "#1f5fa8" title "mean of the intervals within +-2 s (same phase)", \
	     NaN with lines lw 3 dt 2 lc rgb "#c0392b" title "mean of the phase", \
	     for [k = 1:words(pnames)] NaN with boxes fs solid 1.0 fc rgb pcolor(word(pnames, k)) title "migration phase: ".word(pnames, k)
} else {
	plot datafile every ::1 using 1:3 with linespoints lw 1.5 pt 7 ps 0.4 lc rgb "#1f5fa8" title "PingPong MB/s (measured, per interval)", \
	     NaN with lines lw 3 dt 2 lc rgb "#c0392b" title "mean of the phase's intervals", \
	     for [k = 1:words(pnames)] NaN with boxes fs solid 1.0 fc rgb pcolor(word(pnames, k)) title "migration phase: ".word(pnames, k)
}
