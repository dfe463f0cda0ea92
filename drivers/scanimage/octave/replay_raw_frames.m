function n = replay_raw_frames(meta_path, port, pause_s)
% Replays frames through rtdecode_frameAcquired under stand-ins of ScanImage's objects, one
% 'frameAcquired' call per frame, as ScanImage would make them.
%
% meta_path: JSON written by tests/sources/test_scanimage_octave.py (fields raw, frames, lines, pixels,
% frame_numbers, timestamps, rois, planes, channel, display_channels, alternate_transposed); raw is
% a file of frames x lines x pixels uint16, little-endian, C order.
% The socket is opened first ('open'), then pause_s seconds pass so that subscribers connect before
% the first frame, and again after the last one before it is closed. Returns the number of frames
% replayed.
meta = jsondecode(fileread(meta_path));
rtdecode_frameAcquired('open', port);
pause(pause_s);
fid = fopen(meta.raw, 'r', 'ieee-le');
if fid < 0, error('replay_raw_frames: cannot open %s', meta.raw); end
src = StandInSource();
evt = struct('EventName', 'frameAcquired');
bounds = round(linspace(0, meta.lines, meta.rois + 1));   % ROIs: horizontal strips of the frame
n = 0;
for k = 1:meta.frames
    v = fread(fid, meta.lines * meta.pixels, 'uint16=>uint16');
    if numel(v) ~= meta.lines * meta.pixels, error('replay_raw_frames: %s ends at frame %d', meta.raw, k); end
    img_t = reshape(v, meta.pixels, meta.lines);   % C-order [lines pixels] read column-major: pixels x lines
    sd = StandInStripeData();
    sd.frameNumberAcq = meta.frame_numbers(k);
    sd.frameNumberAcqMode = meta.frame_numbers(k);
    sd.frameTimestamp = meta.timestamps(k);
    sd.zIdx = mod(k - 1, meta.planes) + 1;
    sd.channelNumbers = meta.display_channels;
    transposed = ~(meta.alternate_transposed && mod(k, 2) == 0);   % every other frame: not transposed
    for r = 1:meta.rois
        roi = StandInRoiData();
        roi.channels = meta.channel;
        roi.zs = 10 * (sd.zIdx - 1);
        part = img_t(:, (bounds(r) + 1):bounds(r + 1));
        if ~transposed, part = part.'; end
        roi.transposed = transposed;
        roi.imageData = {{part}};
        sd.roiData{r} = roi;
    end
    src.hSI.hDisplay.lastStripeData = sd;
    rtdecode_frameAcquired(src, evt, port);
    n = n + 1;
end
fclose(fid);
% as long again before closing, so the last frames leave the socket: with only the socket's linger a
% clean-clone CI run lost the last of 40 frames once (JeroMQ 0.3.6, 2 cores)
pause(pause_s);
rtdecode_frameAcquired('close');
end
