#!/bin/sh
echo hi   
	echo tab


