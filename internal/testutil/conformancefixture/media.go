package conformancefixture

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"sync"
)

// pngImage returns a 1×1 opaque red PNG, the image used by the image tool,
// the binary resource and the image prompt.
var pngImage = sync.OnceValue(func() []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	img.Set(0, 0, color.NRGBA{R: 0xff, A: 0xff})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic("conformancefixture: encoding PNG: " + err.Error())
	}
	return buf.Bytes()
})

// wavAudio returns a RIFF/WAVE file holding one sample of silence: mono,
// 16-bit PCM at 8 kHz.
var wavAudio = sync.OnceValue(func() []byte {
	const (
		channels      = 1
		sampleRate    = 8000
		bitsPerSample = 16
		blockAlign    = channels * bitsPerSample / 8
		samples       = 1
		dataSize      = samples * blockAlign
	)
	var buf bytes.Buffer
	put := func(v any) { _ = binary.Write(&buf, binary.LittleEndian, v) }
	buf.WriteString("RIFF")
	put(uint32(36 + dataSize)) // size of everything after this field
	buf.WriteString("WAVE")
	buf.WriteString("fmt ")
	put(uint32(16)) // fmt chunk size
	put(uint16(1))  // PCM
	put(uint16(channels))
	put(uint32(sampleRate))
	put(uint32(sampleRate * blockAlign)) // byte rate
	put(uint16(blockAlign))
	put(uint16(bitsPerSample))
	buf.WriteString("data")
	put(uint32(dataSize))
	buf.Write(make([]byte, dataSize))
	return buf.Bytes()
})
