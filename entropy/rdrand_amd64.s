#include "textflag.h"

// func rdrand() (r uint64, ok bool)
TEXT ·rdrand(SB), NOSPLIT, $0-9
	RDRANDQ AX
	SETCS   ok+8(FP)
	MOVQ    AX, r+0(FP)
	RET
