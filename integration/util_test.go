package integration

import "strings"

type stringsBuilder = strings.Builder
