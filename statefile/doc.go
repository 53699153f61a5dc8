// Package statefile stores the handoff records of package proto as files on
// the shared bind mount, and watches a directory of them.
//
// # File format
//
// A record file is a 24-byte envelope followed by a msgpack body:
//
//	offset size field
//	0      4    magic "TDWR"
//	4      1    format version (1)
//	5      1    record kind (proto.Kind)
//	6      2    flags, zero
//	8      8    epoch, big endian; must equal the body's epoch
//	16     4    body length, big endian
//	20     4    CRC32C (Castagnoli) of bytes 0..19 and the body
//	24     n    msgpack body (proto.Snapshot, Standby, Active or Cutover)
//
// # Writing
//
// [Dir.Write] writes a temp file in the same directory, fsyncs it, renames
// it over the final name and fsyncs the directory, so a reader sees the old
// record or the new one, never a mix, whenever the writer dies.
// [Dir.Publish] leaves out the fsyncs, for a record that is of no use after
// a host crash (the handoff's snapshot): whenever the writer dies a reader
// still sees one record or the other. [Dir.Reserve] allocates the files of
// writes to come ahead of time, as unnamed files (O_TMPFILE) that a write
// fills and then names, so that a handoff's writes allocate no inode.
//
// # Reading
//
// [ReadFile] and [Decode] trust nothing: no symlinks, regular files only, at
// most [MaxFileSize] bytes, envelope and CRC checked, every msgpack length
// checked against the bytes that remain before anything is allocated, no
// unknown or missing fields. Errors name the file and what is wrong; content
// errors match errors.Is(err, ErrCorrupt).
//
// # Watching
//
// [Watch] reports complete records as they are renamed into a directory,
// those already there when it starts, and rescans after an inotify overflow.
package statefile
