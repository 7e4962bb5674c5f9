#!/usr/bin/env bash
# Rebuilds the short sample clips in samples/ from Debian packages (see SOURCES.md for provenance and licences).
# Needs: sox, ffmpeg, fluidsynth and the packages tuxpaint-stamps-default, asterisk-core-sounds-en-g722,
# wesnoth-1.16-music, openttd-openmsx, fluid-soundfont-gm.
set -euo pipefail
cd "$(dirname "$0")"
TUX=/usr/share/tuxpaint/stamps
AST=/usr/share/asterisk/sounds/en_US_f_Allison
WES=/usr/share/games/wesnoth/1.16/data/core/music
MSX=/usr/share/games/openttd/baseset/openmsx
SF2=/usr/share/sounds/sf2/FluidR3_GM.sf2
PAUSE=0.3  # seconds of silence after each concatenated clip

# concat OUT CLIP... : each clip -> 24 kHz mono + pause, concatenated, peak-normalised to -1 dBFS, 16-bit FLAC
concat() {
  local out=$1; shift
  local tmpdir; tmpdir=$(mktemp -d)
  local parts=() i=0
  for f in "$@"; do
    local fmt=(); [[ $f == *.g722 ]] && fmt=(-f g722)  # raw G.722 has no header: tell ffmpeg (16 kHz)
    ffmpeg -v error "${fmt[@]}" -i "$f" "$tmpdir/$i.wav"
    sox "$tmpdir/$i.wav" -e floating-point -b 32 "$tmpdir/p$i.wav" gain -3 rate -v 24000 channels 1 pad 0 $PAUSE
    parts+=("$tmpdir/p$i.wav"); i=$((i + 1))
  done
  sox "${parts[@]}" -b 16 "$out" gain -n -1
  rm -r "$tmpdir"
}

# English: professional prompts (G.722-coded at 16 kHz upstream)
concat speech_en.flac $AST/conf-onlyperson.g722 $AST/conf-waitforleader.g722 $AST/cannot-complete-as-dialed.g722

concat speech_fr.flac \
  $TUX/animals/amphibians/frog_desc_fr.ogg $TUX/animals/mammals/aquatic/sea_lion_desc_fr.ogg \
  $TUX/animals/mammals/deer/doe_desc_fr.ogg $TUX/animals/mammals/ferret_desc_fr.ogg \
  $TUX/animals/mammals/aquatic/dolphin_desc_fr.ogg

concat speech_el.flac \
  $TUX/food/vegetables/chilepepper_desc_el.ogg $TUX/food/fruit/cartoon/apple_core_desc_el.ogg \
  $TUX/food/fruit/apple_red_desc_el.ogg $TUX/food/vegetables/yellowpepper_desc_el.ogg

# 48 kHz stereo orchestral excerpt (source is 44.1 kHz Vorbis), 8 s from 0:20, 20 ms fades
sox $WES/battle-epic.ogg -b 16 music_orchestral_48k.flac trim 20 8 rate -v 48000 fade t 0.02 -0 0.02

# MIDI rendered with FluidR3_GM at 24 kHz, downmixed to mono, 7 s from 0:10
tmp=$(mktemp --suffix .wav)
fluidsynth -ni -q -r 24000 -F "$tmp" $SF2 $MSX/busy_schedule.mid >/dev/null
sox "$tmp" -b 16 music_midi.flac trim 10 7 channels 1 fade t 0.02 -0 0.02 gain -n -1
rm -f "$tmp"
